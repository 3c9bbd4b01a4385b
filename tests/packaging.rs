//! The packaging files agree with each other and with the code: versions,
//! rules, mutation flag, title, the settings questions and the example
//! ClusterAdmissionPolicy. Each file is read as the tool that consumes it
//! would read it.

// The no-panic lints guard the policy itself; a test may panic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use cache_buster::settings::{Settings, parse_settings};
use kubewarden_policy_sdk::crd::policies::ClusterAdmissionPolicy;
use kubewarden_policy_sdk::crd::policies::cluster_admission_policy::ClusterAdmissionPolicySpec;
use kubewarden_policy_sdk::settings::Validatable;
use serde_json::Value;
use std::path::PathBuf;

fn repository_file(path: &str) -> String {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|error| panic!("{}: {error}", full.display()))
}

fn yaml(path: &str) -> Value {
    serde_yaml::from_str(&repository_file(path)).unwrap_or_else(|error| panic!("{path}: {error}"))
}

fn metadata() -> Value {
    yaml("policy-metadata.yml")
}

fn annotation(name: &str) -> String {
    metadata()["annotations"][name]
        .as_str()
        .unwrap_or_else(|| panic!("policy-metadata.yml has no annotation {name}"))
        .to_owned()
}

fn crate_version() -> String {
    let cargo: toml::Table = toml::from_str(&repository_file("Cargo.toml")).unwrap();
    cargo["package"]["version"].as_str().unwrap().to_owned()
}

#[test]
fn one_version_everywhere() {
    let version = crate_version();
    let artifacthub = yaml("artifacthub-pkg.yml");
    assert_eq!(annotation("io.kubewarden.policy.version"), version);
    assert_eq!(annotation("com.github.release.tag"), format!("v{version}"));
    assert_eq!(artifacthub["version"], version.as_str());
    assert_eq!(
        artifacthub["containersImages"][0]["image"],
        format!("{}:v{version}", annotation("io.kubewarden.policy.ociUrl")).as_str()
    );
    assert_eq!(
        artifacthub["links"][0]["url"],
        format!(
            "{}/releases/download/v{version}/policy.wasm",
            annotation("io.kubewarden.policy.source")
        )
        .as_str()
    );
    let policy = repository_file("deploy/policy.yaml");
    assert!(policy.contains(&format!(
        "registry://{}:v{version}",
        annotation("io.kubewarden.policy.ociUrl")
    )));
    // One image, one name and tag everywhere: the launcher runs it, and the
    // policy's default `image` (the Job's) is it, of the same release.
    let image = cache_buster::settings::DEFAULT_IMAGE;
    assert!(image.ends_with(&format!(":v{version}")), "{image}");
    let launcher = repository_file("deploy/launcher.yaml");
    assert!(
        launcher.contains(&format!("image: {image}\n")),
        "deploy/launcher.yaml runs another image than {image}"
    );
    assert!(
        policy.contains(&format!("image: {image}\n")),
        "deploy/policy.yaml's settings name another image than {image}"
    );
}

#[test]
fn artifacthub_package_mirrors_the_metadata() {
    let artifacthub = yaml("artifacthub-pkg.yml");
    let metadata = metadata();
    assert_eq!(
        artifacthub["name"],
        annotation("io.kubewarden.policy.title").as_str()
    );
    assert_eq!(
        artifacthub["displayName"],
        annotation("io.artifacthub.displayName").as_str()
    );
    assert_eq!(
        artifacthub["description"],
        annotation("io.kubewarden.policy.description").as_str()
    );
    assert_eq!(
        artifacthub["license"],
        annotation("io.kubewarden.policy.license").as_str()
    );
    assert_eq!(
        artifacthub["homeURL"],
        annotation("io.kubewarden.policy.url").as_str()
    );
    assert_eq!(
        artifacthub["links"][1]["url"],
        annotation("io.kubewarden.policy.source").as_str()
    );
    let keywords: Vec<String> = annotation("io.artifacthub.keywords")
        .split(',')
        .map(|k| k.trim().to_owned())
        .collect();
    assert_eq!(artifacthub["keywords"], serde_json::json!(keywords));
    let author = annotation("io.kubewarden.policy.author");
    let maintainer = &artifacthub["maintainers"][0];
    assert_eq!(
        author,
        format!(
            "{} <{}>",
            maintainer["name"].as_str().unwrap(),
            maintainer["email"].as_str().unwrap()
        )
    );

    let annotations = &artifacthub["annotations"];
    assert_eq!(
        annotations["kubewarden/mutation"],
        metadata["mutating"].to_string().as_str()
    );
    assert_eq!(
        annotations["kubewarden/resources"],
        annotation("io.artifacthub.resources").as_str()
    );
    let rules: Value =
        serde_yaml::from_str(annotations["kubewarden/rules"].as_str().unwrap()).unwrap();
    assert_eq!(rules, metadata["rules"]);
    let questions: Value =
        serde_yaml::from_str(annotations["kubewarden/questions-ui"].as_str().unwrap()).unwrap();
    assert_eq!(questions, yaml("questions-ui.yml"));
    let install = artifacthub["install"].as_str().unwrap();
    assert!(install.contains(&format!(
        "kwctl pull {}:v{}",
        annotation("io.kubewarden.policy.ociUrl"),
        crate_version()
    )));
}

/// Every setting has a question, named as the setting, with its default.
#[test]
fn questions_cover_every_setting_with_its_default() {
    let defaults = serde_json::to_value(Settings::default()).unwrap();
    let mut expected: Vec<(String, Value)> = Vec::new();
    for (key, value) in defaults.as_object().unwrap() {
        if key == "resources" {
            for (kind, pair) in value.as_object().unwrap() {
                for (resource, quantity) in pair.as_object().unwrap() {
                    expected.push((format!("resources.{kind}.{resource}"), quantity.clone()));
                }
            }
        } else {
            expected.push((key.clone(), value.clone()));
        }
    }
    // Settings without a default, and no default in the form.
    for unset in [
        "ttlSecondsAfterFinished",
        "contentInsecureRegistries",
        "contentRegistryCA",
        "imagePullSecrets",
        "nodeSelector",
        "tolerations",
        "priorityClassName",
        "annotations",
    ] {
        expected.push((unset.to_owned(), Value::Null));
    }
    expected.sort_by(|a, b| a.0.cmp(&b.0));

    let questions = yaml("questions-ui.yml");
    let mut asked: Vec<(String, Value)> = questions["questions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            (
                q["variable"].as_str().unwrap().to_owned(),
                q.get("default").cloned().unwrap_or(Value::Null),
            )
        })
        .collect();
    asked.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(asked, expected);
    let provider = questions["questions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["variable"] == "provider")
        .unwrap();
    let every_provider: Vec<&str> = cache_buster::providers::Provider::ALL
        .iter()
        .map(|provider| provider.name())
        .collect();
    assert_eq!(provider["options"], serde_json::json!(every_provider));
}

fn cluster_admission_policy() -> ClusterAdmissionPolicy {
    serde_yaml::from_str(&repository_file("deploy/policy.yaml")).unwrap()
}

fn spec() -> ClusterAdmissionPolicySpec {
    cluster_admission_policy()
        .spec
        .expect("deploy/policy.yaml has a spec")
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap()
}

#[test]
fn the_cluster_admission_policy_is_a_valid_kubewarden_resource() {
    // The SDK's typed CRD refuses unknown fields and wrong enum values.
    let policy = cluster_admission_policy();
    assert_eq!(policy.metadata.name.as_deref(), Some("cache-buster"));
    let spec = spec();
    assert!(spec.mutating);
    assert_eq!(json(&spec.side_effects), "\"None\"");
    assert_eq!(json(&spec.mode), "\"protect\"");
    assert_eq!(json(&spec.failure_policy), "\"Ignore\"");
    // An evaluation is cut off (2 s) well before the API server gives up on
    // the webhook (10 s), so a fault is answered rather than timed out.
    assert_eq!(json(&spec.timeout_eval_seconds), "2");
    assert_eq!(json(&spec.timeout_seconds), "10");
}

#[test]
fn the_cluster_admission_policy_agrees_with_the_metadata() {
    let policy = cluster_admission_policy();
    let metadata = metadata();
    let spec = spec();
    assert_eq!(Value::Bool(spec.mutating), metadata["mutating"]);
    assert_eq!(
        serde_json::to_value(&spec.background_audit).unwrap(),
        metadata["backgroundAudit"]
    );
    assert_eq!(
        serde_json::to_value(&spec.rules).unwrap(),
        metadata["rules"]
    );
    let annotations = policy.metadata.annotations.unwrap();
    for key in [
        "io.kubewarden.policy.severity",
        "io.kubewarden.policy.category",
    ] {
        assert_eq!(
            annotations.get(key).map(String::as_str),
            Some(annotation(key).as_str()),
            "{key}"
        );
    }
    // Only Deployments carrying the site label reach the policy-server.
    let selector = spec.object_selector.unwrap();
    let expression = &selector.match_expressions.unwrap()[0];
    assert_eq!(expression.key, Settings::default().site_label);
    assert_eq!(expression.operator, "Exists");
}

#[test]
fn the_example_settings_are_valid_and_spell_out_the_defaults() {
    let settings_json = serde_json::to_vec(&spec().settings.0).unwrap();
    let settings = parse_settings(&settings_json).unwrap();
    settings.validate().unwrap();
    assert_eq!(settings, Settings::default());
    let spelled_out: Value = serde_json::from_slice(&settings_json).unwrap();
    assert_eq!(
        spelled_out,
        serde_json::to_value(Settings::default()).unwrap()
    );
}

#[test]
fn every_provider_has_a_secret_example_with_its_keys() {
    use cache_buster::providers::Provider;
    for provider in Provider::ALL {
        let path = format!("deploy/secrets/{}.yaml", provider.name());
        // A provider without keys (http: the site's own caches) needs no
        // Secret, and has no example of one.
        if provider.secret_keys().is_empty() {
            let full = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(&path);
            assert!(!full.exists(), "{path}");
            continue;
        }
        let secret = yaml(&path);
        assert_eq!(secret["kind"], "Secret");
        assert_eq!(
            secret["metadata"]["name"],
            Settings::default().credentials_secret.as_str()
        );
        let keys: Vec<&str> = secret["stringData"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = provider.secret_keys().to_vec();
        expected.sort_unstable();
        assert_eq!(keys, expected, "{provider}");
    }
}

#[test]
fn the_job_role_grants_exactly_what_wait_rollout_needs() {
    let text = repository_file("deploy/site/job-rbac.yaml");
    let documents: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|document| serde::Deserialize::deserialize(document).unwrap())
        .collect();
    let role = documents.iter().find(|d| d["kind"] == "Role").unwrap();
    assert_eq!(
        role["rules"],
        serde_json::json!([{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch"]}])
    );
    let account = documents
        .iter()
        .find(|d| d["kind"] == "ServiceAccount")
        .unwrap();
    assert_eq!(
        account["metadata"]["name"],
        Settings::default().service_account_name.as_str()
    );
}

fn documents(path: &str) -> Vec<Value> {
    let text = repository_file(path);
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| serde::Deserialize::deserialize(document).unwrap())
        .collect()
}

fn launcher_document(kind: &str) -> Value {
    documents("deploy/launcher.yaml")
        .into_iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("deploy/launcher.yaml has no {kind}"))
}

/// One source of settings: the launcher reads the ClusterAdmissionPolicy of
/// deploy/policy.yaml, by its name, and no copy of its settings exists.
#[test]
fn the_launcher_reads_the_settings_of_the_policy_itself() {
    let policy = documents("deploy/policy.yaml")
        .into_iter()
        .find(|d| d["kind"] == "ClusterAdmissionPolicy")
        .expect("deploy/policy.yaml has a ClusterAdmissionPolicy");
    let name = policy["metadata"]["name"].as_str().unwrap();
    let deployment = launcher_document("Deployment");
    let args = &deployment["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(
        args.as_array()
            .unwrap()
            .contains(&Value::from(format!("--policy={name}"))),
        "{args}"
    );
    assert!(!args.to_string().contains("--settings"), "{args}");
    assert!(
        documents("deploy/launcher.yaml")
            .iter()
            .all(|d| d["kind"] != "ConfigMap"),
        "a copy of the settings in a ConfigMap"
    );
    let role = launcher_document("ClusterRole");
    let rule = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|rule| rule["resources"][0] == "clusteradmissionpolicies")
        .expect("a rule for the policy");
    assert_eq!(rule["resourceNames"], serde_json::json!([name]));
}

#[test]
fn the_launcher_has_only_the_rights_it_needs() {
    let role = launcher_document("ClusterRole");
    assert_eq!(
        role["rules"],
        serde_json::json!([
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["list", "watch"]},
            {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "list", "watch", "delete"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
            {"apiGroups": ["policies.kubewarden.io"], "resources": ["clusteradmissionpolicies"],
             "resourceNames": ["cache-buster"], "verbs": ["list", "watch"]}
        ])
    );
    // The Lease: only the one the manifest creates, in the launcher's namespace.
    let lease = launcher_document("Lease");
    let role = launcher_document("Role");
    assert_eq!(
        role["metadata"]["namespace"],
        lease["metadata"]["namespace"]
    );
    assert_eq!(
        role["rules"],
        serde_json::json!([
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
             "resourceNames": [lease["metadata"]["name"]], "verbs": ["get", "list", "watch", "patch"]}
        ])
    );
    let binding = launcher_document("RoleBinding");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(binding["subjects"][0]["name"], "launcher");
}

/// Two replicas, one Lease: the launcher is told the Lease the manifest
/// creates, its name and namespace come from the downward API, and a
/// disruption budget and anti-affinity keep one replica through a drain.
#[test]
fn two_launchers_run_with_a_lease_a_budget_and_anti_affinity() {
    let deployment = launcher_document("Deployment");
    let lease = launcher_document("Lease");
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 2);
    let container = &spec["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        args.contains(&format!("--lease={}", lease["metadata"]["name"].as_str().unwrap()).as_str())
    );
    let env: Vec<(&str, &str)> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|variable| {
            (
                variable["name"].as_str().unwrap(),
                variable["valueFrom"]["fieldRef"]["fieldPath"]
                    .as_str()
                    .unwrap(),
            )
        })
        .collect();
    assert_eq!(
        env,
        [
            ("POD_NAME", "metadata.name"),
            ("POD_NAMESPACE", "metadata.namespace")
        ]
    );
    assert_eq!(
        lease["metadata"]["namespace"],
        deployment["metadata"]["namespace"]
    );
    let pods = &spec["selector"]["matchLabels"];
    let anti = &spec["template"]["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        [0]["podAffinityTerm"];
    assert_eq!(anti["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(&anti["labelSelector"]["matchLabels"], pods);
    let budget = launcher_document("PodDisruptionBudget");
    assert_eq!(budget["spec"]["minAvailable"], 1);
    assert_eq!(&budget["spec"]["selector"]["matchLabels"], pods);
}

#[test]
fn the_launcher_runs_non_root_on_a_read_only_filesystem() {
    let deployment = launcher_document("Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"],
        serde_json::json!(["ALL"])
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    // Ready only while its watches run (a Forbidden watch makes it unready).
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
}

/// Artifact Hub's install text installs what the README's Install section
/// does: the policy with its objectSelector and failurePolicy, and the
/// launcher, without which nothing is purged; and it names today's
/// Kubewarden (the admission-controller chart, kwctl from adm-controller).
#[test]
fn every_install_path_installs_the_launcher_and_the_policys_selector() {
    let artifacthub = yaml("artifacthub-pkg.yml");
    let install = artifacthub["install"].as_str().unwrap();
    let readme = repository_file("README.md");
    let readme_install = readme
        .split("\n## Install\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .unwrap();
    let version = crate_version();
    for (name, text) in [
        ("artifacthub-pkg.yml", install),
        ("README's Install", readme_install),
    ] {
        for needed in [
            format!("//deploy?ref=v{version}"),
            format!("raw/v{version}/deploy/launcher.yaml"),
            "failurePolicy: Ignore".to_owned(),
            "objectSelector:".to_owned(),
            "{key: cache-buster.io/site, operator: Exists}".to_owned(),
            "kubectl wait --for=condition=PolicyUniquelyReachable clusteradmissionpolicy/cache-buster".to_owned(),
            "admission-controller".to_owned(),
        ] {
            assert!(text.contains(&needed), "{name} lacks {needed}");
        }
    }
    // What the install texts add to a scaffolded policy is what deploy/policy.yaml has.
    let spec = spec();
    assert_eq!(json(&spec.failure_policy), "\"Ignore\"");
    let selector = json(&spec.object_selector);
    assert!(
        selector.contains(r#""key":"cache-buster.io/site","operator":"Exists""#),
        "{selector}"
    );
    // Today's Kubewarden: no archived repository, no deprecated chart.
    for file in [
        "artifacthub-pkg.yml",
        "README.md",
        "docs/flux.md",
        "docs/argo-cd.md",
    ] {
        let text = repository_file(file);
        for stale in [
            "github.com/kubewarden/kwctl",
            "helm/kubewarden/kubewarden-controller",
        ] {
            assert!(!text.contains(stale), "{file} still links {stale}");
        }
    }
    assert_eq!(
        artifacthub["recommendations"][0]["url"],
        "https://artifacthub.io/packages/helm/kubewarden/admission-controller"
    );
}

/// One domain: the annotation prefix, and every contact address.
#[test]
fn one_domain_everywhere() {
    let domain = cache_buster::keys::DEFAULT_PREFIX;
    let author = annotation("io.kubewarden.policy.author");
    assert!(author.ends_with(&format!("@{domain}>")), "{author}");
    let artifacthub = yaml("artifacthub-pkg.yml");
    for maintainer in artifacthub["maintainers"].as_array().unwrap() {
        let email = maintainer["email"].as_str().unwrap();
        assert!(email.ends_with(&format!("@{domain}")), "{email}");
    }
    let security = repository_file("SECURITY.md");
    assert!(
        security.contains(&format!("security@{domain}")),
        "SECURITY.md"
    );
}

/// The verification config accepts exactly this repository's workflows,
/// the one whose release workflow signs the module.
#[test]
fn the_verification_config_trusts_this_repositorys_workflows() {
    let config = yaml("deploy/verification-config.yml");
    assert_eq!(config["apiVersion"], "v1");
    let signature = &config["allOf"][0];
    assert_eq!(signature["kind"], "githubAction");
    let home = yaml("artifacthub-pkg.yml")["homeURL"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        home,
        format!(
            "https://github.com/{}/{}",
            signature["owner"].as_str().unwrap(),
            signature["repo"].as_str().unwrap()
        )
    );
    let workflow = repository_file(".github/workflows/release.yml");
    assert!(
        workflow.contains("make release-policy") && workflow.contains("make release-verify-policy")
    );
}

/// The changelog has this version's entry, and says what a release may change.
#[test]
fn the_changelog_has_this_versions_entry() {
    let changelog = repository_file("CHANGELOG.md");
    let version = crate_version();
    assert!(
        changelog.contains(&format!("\n## [{version}] - ")),
        "CHANGELOG.md has no entry for {version}"
    );
    assert!(changelog.contains(&format!(
        "[{version}]: https://github.com/cache-buster/cache-buster-policy/releases/tag/v{version}"
    )));
    assert!(changelog.contains("\n## Versioning\n"));
}

/// docs/argo-cd.md's Applications point at this repository, at this
/// release, at kustomizations that exist (the base and the quick start);
/// its image change is the README's next image, which the quick start does
/// not run yet, so following the page rolls out and purges again.
#[test]
fn the_argo_cd_walkthrough_points_at_what_exists() {
    let page = repository_file("docs/argo-cd.md");
    let cargo: toml::Table = toml::from_str(&repository_file("Cargo.toml")).unwrap();
    let repository = cargo["package"]["repository"].as_str().unwrap();
    let blocks: Vec<&str> = page
        .split("```yaml\n")
        .skip(1)
        .filter_map(|block| block.split_once("```").map(|(yaml, _)| yaml))
        .collect();
    let applications: Vec<Value> = blocks
        .iter()
        .map(|block| serde_yaml::from_str::<Value>(block).unwrap())
        .filter(|document| document["kind"] == "Application")
        .collect();
    let paths: Vec<&str> = applications
        .iter()
        .map(|application| {
            let source = &application["spec"]["source"];
            assert_eq!(source["repoURL"], repository);
            assert_eq!(
                source["targetRevision"],
                format!("v{}", crate_version()).as_str()
            );
            source["path"].as_str().unwrap()
        })
        .collect();
    assert_eq!(paths, ["deploy", "docs/examples/quickstart"]);
    for path in paths {
        repository_file(&format!("{path}/kustomization.yaml"));
    }
    let next_image = page
        .lines()
        .find_map(|line| line.strip_prefix("argocd app set shop --kustomize-image "))
        .expect("docs/argo-cd.md changes the image")
        .trim();
    let readme = repository_file("README.md");
    assert!(
        readme.contains(&format!("deployment/shop web={next_image}")),
        "the README's quick start rolls out another image than {next_image}"
    );
    assert!(page.contains(&format!(r#"["{next_image}"]"#)));
    assert!(!repository_file("docs/examples/quickstart/shop.yaml").contains(next_image));
}
